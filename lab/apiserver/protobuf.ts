/**
 * Decoding of the Kubernetes protobuf encoding for request bodies, as kubectl's
 * typed clients send it (`kubectl create namespace|configmap|secret|
 * deployment|service|serviceaccount|token`, `kubectl auth can-i|whoami`):
 * "k8s\0" + runtime.Unknown{typeMeta, raw}, raw being the object in the
 * generated.proto encoding of k8s.io/api.
 *
 * Schema-driven and strict: a table of the messages and fields those commands
 * use, with upstream's field numbers. A field or type not in the table makes
 * the whole body fail with UNSUPPORTED (→ 415), never a silently dropped
 * field. Empty values are dropped as Go's `omitempty` JSON would, except for
 * pointer scalars (`replicas: 0` stays). Responses stay JSON (clients also
 * accept application/json).
 */
import { KnodeError } from '../../lib/errors.js';
import type { Json, JsonObject, KubeObject } from './object.js';

type Scalar = 'string' | 'int' | 'bool' | 'bytes';
interface Field {
  name: string;
  /** A scalar, a message name, `map<string>`/`map<bytes>`/`map<Quantity>`. */
  type: Scalar | 'map<string>' | 'map<bytes>' | 'map<Quantity>' | 'IntOrString' | 'Time' | string;
  repeated?: boolean;
  /** Pointer scalar in Go: a zero value was set on purpose. */
  keepZero?: boolean;
}
type Message = Record<number, Field>;

const f = (name: string, type: Field['type'], extra: Partial<Field> = {}): Field => ({ name, type, ...extra });

const messages: Record<string, Message> = {
  ObjectMeta: {
    1: f('name', 'string'),
    2: f('generateName', 'string'),
    3: f('namespace', 'string'),
    4: f('selfLink', 'string'),
    5: f('uid', 'string'),
    6: f('resourceVersion', 'string'),
    7: f('generation', 'int'),
    8: f('creationTimestamp', 'Time'),
    9: f('deletionTimestamp', 'Time'),
    10: f('deletionGracePeriodSeconds', 'int', { keepZero: true }),
    11: f('labels', 'map<string>'),
    12: f('annotations', 'map<string>'),
    14: f('finalizers', 'string', { repeated: true }),
  },
  Namespace: { 1: f('metadata', 'ObjectMeta'), 2: f('spec', 'NamespaceSpec'), 3: f('status', 'NamespaceStatus') },
  NamespaceSpec: { 1: f('finalizers', 'string', { repeated: true }) },
  NamespaceStatus: { 1: f('phase', 'string') },
  ConfigMap: { 1: f('metadata', 'ObjectMeta'), 2: f('data', 'map<string>'), 3: f('binaryData', 'map<bytes>'), 4: f('immutable', 'bool', { keepZero: true }) },
  Secret: {
    1: f('metadata', 'ObjectMeta'),
    2: f('data', 'map<bytes>'),
    3: f('type', 'string'),
    4: f('stringData', 'map<string>'),
    5: f('immutable', 'bool', { keepZero: true }),
  },
  ServiceAccount: { 1: f('metadata', 'ObjectMeta'), 4: f('automountServiceAccountToken', 'bool', { keepZero: true }) },
  Service: { 1: f('metadata', 'ObjectMeta'), 2: f('spec', 'ServiceSpec'), 3: f('status', 'ServiceStatus') },
  ServiceSpec: {
    1: f('ports', 'ServicePort', { repeated: true }),
    2: f('selector', 'map<string>'),
    3: f('clusterIP', 'string'),
    4: f('type', 'string'),
    5: f('externalIPs', 'string', { repeated: true }),
    7: f('sessionAffinity', 'string'),
    8: f('loadBalancerIP', 'string'),
    10: f('externalName', 'string'),
    11: f('externalTrafficPolicy', 'string'),
    12: f('healthCheckNodePort', 'int'),
    13: f('publishNotReadyAddresses', 'bool'),
    18: f('clusterIPs', 'string', { repeated: true }),
    19: f('ipFamilies', 'string', { repeated: true }),
    17: f('ipFamilyPolicy', 'string'),
    22: f('internalTrafficPolicy', 'string'),
  },
  ServicePort: {
    1: f('name', 'string'),
    2: f('protocol', 'string'),
    3: f('port', 'int'),
    4: f('targetPort', 'IntOrString'),
    5: f('nodePort', 'int'),
    6: f('appProtocol', 'string'),
  },
  ServiceStatus: { 1: f('loadBalancer', 'LoadBalancerStatus') },
  LoadBalancerStatus: {},
  Deployment: { 1: f('metadata', 'ObjectMeta'), 2: f('spec', 'DeploymentSpec'), 3: f('status', 'DeploymentStatus') },
  DeploymentSpec: {
    1: f('replicas', 'int', { keepZero: true }),
    2: f('selector', 'LabelSelector'),
    3: f('template', 'PodTemplateSpec'),
    4: f('strategy', 'DeploymentStrategy'),
    5: f('minReadySeconds', 'int'),
    6: f('revisionHistoryLimit', 'int', { keepZero: true }),
    7: f('paused', 'bool'),
    9: f('progressDeadlineSeconds', 'int', { keepZero: true }),
  },
  DeploymentStrategy: { 1: f('type', 'string') },
  DeploymentStatus: {
    1: f('observedGeneration', 'int'),
    2: f('replicas', 'int'),
    3: f('updatedReplicas', 'int'),
    4: f('availableReplicas', 'int'),
    5: f('unavailableReplicas', 'int'),
    7: f('readyReplicas', 'int'),
    8: f('collisionCount', 'int', { keepZero: true }),
  },
  LabelSelector: { 1: f('matchLabels', 'map<string>'), 2: f('matchExpressions', 'LabelSelectorRequirement', { repeated: true }) },
  LabelSelectorRequirement: { 1: f('key', 'string'), 2: f('operator', 'string'), 3: f('values', 'string', { repeated: true }) },
  PodTemplateSpec: { 1: f('metadata', 'ObjectMeta'), 2: f('spec', 'PodSpec') },
  PodSpec: {
    2: f('containers', 'Container', { repeated: true }),
    3: f('restartPolicy', 'string'),
    4: f('terminationGracePeriodSeconds', 'int', { keepZero: true }),
    6: f('dnsPolicy', 'string'),
    7: f('nodeSelector', 'map<string>'),
    8: f('serviceAccountName', 'string'),
    9: f('serviceAccount', 'string'),
    10: f('nodeName', 'string'),
    11: f('hostNetwork', 'bool'),
    12: f('hostPID', 'bool'),
    13: f('hostIPC', 'bool'),
    14: f('securityContext', 'PodSecurityContext'),
    16: f('hostname', 'string'),
    17: f('subdomain', 'string'),
    19: f('schedulerName', 'string'),
    20: f('initContainers', 'Container', { repeated: true }),
    24: f('priorityClassName', 'string'),
    29: f('runtimeClassName', 'string'),
    31: f('preemptionPolicy', 'string'),
    34: f('setHostnameAsFQDN', 'bool', { keepZero: true }),
  },
  Container: {
    1: f('name', 'string'),
    2: f('image', 'string'),
    3: f('command', 'string', { repeated: true }),
    4: f('args', 'string', { repeated: true }),
    5: f('workingDir', 'string'),
    6: f('ports', 'ContainerPort', { repeated: true }),
    7: f('env', 'EnvVar', { repeated: true }),
    8: f('resources', 'ResourceRequirements'),
    13: f('terminationMessagePath', 'string'),
    14: f('imagePullPolicy', 'string'),
    16: f('stdin', 'bool'),
    17: f('stdinOnce', 'bool'),
    18: f('tty', 'bool'),
    20: f('terminationMessagePolicy', 'string'),
  },
  PodSecurityContext: {},
  ContainerPort: { 1: f('name', 'string'), 2: f('hostPort', 'int'), 3: f('containerPort', 'int'), 4: f('protocol', 'string'), 5: f('hostIP', 'string') },
  EnvVar: { 1: f('name', 'string'), 2: f('value', 'string') },
  ResourceRequirements: { 1: f('limits', 'map<Quantity>'), 2: f('requests', 'map<Quantity>') },
  SelfSubjectAccessReview: { 1: f('metadata', 'ObjectMeta'), 2: f('spec', 'SelfSubjectAccessReviewSpec'), 3: f('status', 'SubjectAccessReviewStatus') },
  SelfSubjectAccessReviewSpec: { 1: f('resourceAttributes', 'ResourceAttributes'), 2: f('nonResourceAttributes', 'NonResourceAttributes') },
  ResourceAttributes: {
    1: f('namespace', 'string'),
    2: f('verb', 'string'),
    3: f('group', 'string'),
    4: f('version', 'string'),
    5: f('resource', 'string'),
    6: f('subresource', 'string'),
    7: f('name', 'string'),
  },
  NonResourceAttributes: { 1: f('path', 'string'), 2: f('verb', 'string') },
  SubjectAccessReviewStatus: { 1: f('allowed', 'bool'), 2: f('reason', 'string'), 3: f('evaluationError', 'string'), 4: f('denied', 'bool') },
  SelfSubjectReview: { 1: f('metadata', 'ObjectMeta'), 2: f('status', 'SelfSubjectReviewStatus') },
  SelfSubjectReviewStatus: { 1: f('userInfo', 'UserInfo') },
  UserInfo: { 1: f('username', 'string'), 2: f('uid', 'string'), 3: f('groups', 'string', { repeated: true }) },
  TokenRequest: { 1: f('metadata', 'ObjectMeta'), 2: f('spec', 'TokenRequestSpec'), 3: f('status', 'TokenRequestStatus') },
  TokenRequestSpec: { 1: f('audiences', 'string', { repeated: true }), 3: f('boundObjectRef', 'BoundObjectReference'), 4: f('expirationSeconds', 'int', { keepZero: true }) },
  BoundObjectReference: { 1: f('kind', 'string'), 2: f('apiVersion', 'string'), 3: f('name', 'string'), 4: f('uid', 'string') },
  TokenRequestStatus: { 1: f('token', 'string'), 2: f('expirationTimestamp', 'Time') },
};

/** apiVersion/kind → top-level message. */
const topLevel: Record<string, string> = {
  'v1/Namespace': 'Namespace',
  'v1/ConfigMap': 'ConfigMap',
  'v1/Secret': 'Secret',
  'v1/ServiceAccount': 'ServiceAccount',
  'v1/Service': 'Service',
  'apps/v1/Deployment': 'Deployment',
  'authorization.k8s.io/v1/SelfSubjectAccessReview': 'SelfSubjectAccessReview',
  'authentication.k8s.io/v1/SelfSubjectReview': 'SelfSubjectReview',
  'authentication.k8s.io/v1/TokenRequest': 'TokenRequest',
};

function unsupported(message: string): KnodeError {
  return new KnodeError('PROTOBUF_UNSUPPORTED', message);
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw unsupported('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw unsupported('varint too long');
    }
  }

  bytes(): Buffer {
    const len = Number(this.varint());
    if (this.pos + len > this.buf.length) throw unsupported('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
}

interface RawField {
  num: number;
  wire: number;
  varint?: bigint;
  bytes?: Buffer;
}

function fields(buf: Buffer): RawField[] {
  const r = new Reader(buf);
  const out: RawField[] = [];
  while (!r.done()) {
    const key = Number(r.varint());
    const num = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ num, wire, varint: r.varint() });
    else if (wire === 2) out.push({ num, wire, bytes: r.bytes() });
    else throw unsupported(`wire type ${wire} is not used by the supported messages`);
  }
  return out;
}

function signed(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

function decodeMap(buf: Buffer, value: 'string' | 'bytes' | 'Quantity'): [string, Json] {
  let key = '';
  let val: Json = '';
  for (const e of fields(buf)) {
    if (e.num === 1 && e.bytes) key = e.bytes.toString('utf8');
    else if (e.num === 2 && e.bytes) {
      if (value === 'string') val = e.bytes.toString('utf8');
      else if (value === 'bytes') val = e.bytes.toString('base64');
      else val = fields(e.bytes).find((q) => q.num === 1)?.bytes?.toString('utf8') ?? '';
    }
  }
  return [key, val];
}

function isEmpty(v: Json): boolean {
  if (v === '' || v === 0 || v === false || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v).length === 0;
  return false;
}

function decodeMessage(buf: Buffer, name: string): JsonObject {
  const schema = messages[name];
  if (!schema) throw unsupported(`protobuf message ${name} is not supported`);
  const out: JsonObject = {};
  for (const raw of fields(buf)) {
    const field = schema[raw.num];
    if (!field) throw unsupported(`field ${raw.num} of ${name} is not supported by the lab apiserver's protobuf decoder`);
    let value: Json;
    switch (field.type) {
      case 'string':
        value = raw.bytes?.toString('utf8') ?? '';
        break;
      case 'bytes':
        value = raw.bytes?.toString('base64') ?? '';
        break;
      case 'int':
        value = signed(raw.varint ?? 0n);
        break;
      case 'bool':
        value = (raw.varint ?? 0n) !== 0n;
        break;
      case 'map<string>':
      case 'map<bytes>':
      case 'map<Quantity>': {
        const [k, v] = decodeMap(raw.bytes ?? Buffer.alloc(0), field.type === 'map<string>' ? 'string' : field.type === 'map<bytes>' ? 'bytes' : 'Quantity');
        const m = (out[field.name] as JsonObject | undefined) ?? {};
        m[k] = v;
        out[field.name] = m;
        continue;
      }
      case 'Time': {
        const t = fields(raw.bytes ?? Buffer.alloc(0));
        const seconds = signed(t.find((x) => x.num === 1)?.varint ?? 0n);
        value = seconds === 0 ? null : new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
        break;
      }
      case 'IntOrString': {
        const t = fields(raw.bytes ?? Buffer.alloc(0));
        const type = Number(t.find((x) => x.num === 1)?.varint ?? 0n);
        value = type === 1 ? (t.find((x) => x.num === 3)?.bytes?.toString('utf8') ?? '') : signed(t.find((x) => x.num === 2)?.varint ?? 0n);
        break;
      }
      default:
        value = decodeMessage(raw.bytes ?? Buffer.alloc(0), field.type);
    }
    if (field.repeated) {
      const list = (out[field.name] as Json[] | undefined) ?? [];
      list.push(value);
      out[field.name] = list;
    } else out[field.name] = value;
  }
  for (const [k, v] of Object.entries(out)) {
    const field = Object.values(schema).find((x) => x.name === k);
    if (isEmpty(v) && !field?.keepZero) Reflect.deleteProperty(out, k);
  }
  return out;
}

export const protobufMediaType = 'application/vnd.kubernetes.protobuf';
const magic = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** Decodes a protobuf request body; throws KnodeError PROTOBUF_UNSUPPORTED for anything outside the table. */
export function decodeKubeProtobuf(buf: Buffer): KubeObject {
  if (buf.length < 4 || !buf.subarray(0, 4).equals(magic)) throw unsupported('protobuf body without the k8s magic prefix');
  let apiVersion = '';
  let kind = '';
  let raw: Buffer | undefined;
  for (const e of fields(buf.subarray(4))) {
    if (e.num === 1 && e.bytes) {
      for (const t of fields(e.bytes)) {
        if (t.num === 1) apiVersion = t.bytes?.toString('utf8') ?? '';
        if (t.num === 2) kind = t.bytes?.toString('utf8') ?? '';
      }
    } else if (e.num === 2) raw = e.bytes;
    else if ((e.num === 3 || e.num === 4) && e.bytes && e.bytes.length > 0) throw unsupported('content encodings inside runtime.Unknown are not supported');
  }
  const message = topLevel[`${apiVersion}/${kind}`];
  if (!message) throw unsupported(`protobuf encoding of ${apiVersion} ${kind} is not supported by the lab apiserver; send JSON`);
  const obj = decodeMessage(raw ?? Buffer.alloc(0), message);
  return { apiVersion, kind, ...obj, metadata: (obj.metadata as KubeObject['metadata'] | undefined) ?? {} };
}
