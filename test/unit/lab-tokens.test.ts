// The lab's static token file: rendered for the apiserver's --token-file and
// read back by its parser (users, uids, groups).
import t from 'tap';
import { parseTokenFile } from '../../lab/apiserver/auth.js';
import { labTokenUsers, renderTokenFile } from '../../lab/machines/control-plane.js';

t.test('renderTokenFile is what the apiserver parses', async (t) => {
  const text = renderTokenFile({ 'lab-admin': 'tok-a', 'lab-viewer': 'tok-v' });
  const parsed = parseTokenFile(text);
  t.same(parsed.get('tok-a'), { name: 'lab-admin', uid: 'lab-admin', groups: ['system:masters'] });
  t.same(parsed.get('tok-v'), { name: 'lab-viewer', uid: 'lab-viewer', groups: ['lab:viewers'] });
  t.equal(parsed.size, Object.keys(labTokenUsers).length);
});
