/**
 * Upstream's chain-name hashing: base32(sha256(servicePortName + protocol [+ endpoint])), cut.
 * iptables names keep 16 characters (KUBE-SVC-XPGD46QRK7WJZT7O), nftables names 8. 16 base32
 * characters are exactly the first 10 bytes of the digest, so only those are encoded.
 */
import * as crypto from 'node:crypto';

/** One-shot sha256: `crypto.hash` (Node ≥ 20.12, ~3× faster for short names) or createHash. */
const sha256: (text: string) => Buffer =
  typeof crypto.hash === 'function' ? (text) => crypto.hash('sha256', text, 'buffer') : (text) => crypto.createHash('sha256').update(text).digest();

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 of whole 5-byte groups (no padding needed). */
function base32(bytes: Uint8Array, length: number): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
      if (out.length === length) return out;
    }
  }
  return out;
}

/** First `length` (≤ 16) base32 characters of sha256(text). */
export function hashName(text: string, length = 16): string {
  const digest = sha256(text);
  return base32(digest.subarray(0, 10), length);
}

/** Upstream portProtoHash(servicePortName, protocol); protocol lower-case ("tcp"). */
export function portProtoHash(servicePortKey: string, protocolLower: string, length = 16): string {
  return hashName(servicePortKey + protocolLower, length);
}

/** Upstream servicePortEndpointChainName's hash: servicePortName + protocol + "ip:port". */
export function endpointHash(servicePortKey: string, protocolLower: string, endpointKey: string, length = 16): string {
  return hashName(servicePortKey + protocolLower + endpointKey, length);
}
