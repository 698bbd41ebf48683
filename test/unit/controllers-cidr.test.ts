import t from 'tap';
import { CidrAllocator, formatIPv4, parseCIDR, parseIPv4 } from '../../lab/controllers/cidr.js';

t.test('addresses and CIDRs', async (t) => {
  t.equal(parseIPv4('10.244.1.0'), 0x0af40100);
  t.equal(formatIPv4(0x0af40100), '10.244.1.0');
  t.same(parseCIDR('10.244.3.7/16'), { base: 0x0af40000, prefix: 16 });
  t.throws(() => parseIPv4('10.300.0.1'), { code: 'INVALID_CIDR' });
  t.throws(() => parseCIDR('10.0.0.0/40'), { code: 'INVALID_CIDR' });
});

t.test('allocates /24s lowest first, occupies existing, releases', async (t) => {
  const a = new CidrAllocator('10.244.0.0/16', 24);
  t.equal(a.allocate(), '10.244.0.0/24');
  t.equal(a.allocate(), '10.244.1.0/24');
  t.ok(a.occupy('10.244.2.0/24'), 'existing node CIDR');
  t.equal(a.allocate(), '10.244.3.0/24');
  a.release('10.244.1.0/24');
  t.notOk(a.isUsed('10.244.1.0/24'));
  t.equal(a.allocate(), '10.244.1.0/24', 'a released block is reused');
  t.notOk(a.occupy('10.245.0.0/24'), 'outside the range');
  t.notOk(a.occupy('10.244.0.0/25'), 'wrong size');
  t.equal(a.usedCount, 4);
});

t.test('rebuilt from existing nodes, the allocation is stable', async (t) => {
  const before = new CidrAllocator('10.244.0.0/16', 24);
  const nodes = [before.allocate(), before.allocate(), before.allocate()];
  const after = new CidrAllocator('10.244.0.0/16', 24);
  for (const c of nodes) after.occupy(c);
  t.equal(after.allocate(), '10.244.3.0/24');
});

t.test('exhaustion and bad sizes', async (t) => {
  const a = new CidrAllocator('192.168.0.0/23', 24);
  a.allocate();
  a.allocate();
  t.throws(() => a.allocate(), { code: 'CIDR_EXHAUSTED' });
  t.throws(() => new CidrAllocator('10.0.0.0/16', 8), { code: 'INVALID_CIDR' });
});
