/**
 * Validation as upstream does it for the fields the lab serves: object names
 * (DNS-1123 subdomain / label, DNS-1035 label per resource), labels and
 * annotations, and the spec rules clients trip over (pod containers, service
 * ports). Pure: returns the causes of a 422 Invalid, empty when valid.
 */
import type { StatusCause } from './errors.js';
import { getArray, getMap, getString, isObject } from './object.js';
import type { KubeObject } from './object.js';
import type { NameRule } from './resources.js';
import { labelKeyError, labelValueError } from './selectors.js';

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dns1035Label = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export function nameErrors(rule: NameRule, name: string): string[] {
  switch (rule) {
    case 'dns1123-label':
      if (name.length > 63) return ['must be no more than 63 characters'];
      return dns1123Label.test(name)
        ? []
        : [
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
          ];
    case 'dns1035-label':
      if (name.length > 63) return ['must be no more than 63 characters'];
      return dns1035Label.test(name)
        ? []
        : [
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
          ];
    case 'path-segment':
      if (name === '.' || name === '..') return [`may not be '${name}'`];
      return /[/%]/.test(name) ? [`may not contain '/' or '%'`] : [];
    case 'dns1123-subdomain':
      if (name.length > 253) return ['must be no more than 253 characters'];
      return dns1123Subdomain.test(name)
        ? []
        : [
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
          ];
  }
}

export function metadataErrors(obj: KubeObject, rule: NameRule): StatusCause[] {
  const causes: StatusCause[] = [];
  const m = obj.metadata;
  const name = m.name ?? '';
  if (!name) causes.push({ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name or generateName is required' });
  else for (const e of nameErrors(rule, name)) causes.push({ field: 'metadata.name', message: `Invalid value: "${name}": ${e}` });
  if (m.labels !== undefined) {
    if (!isObject(m.labels)) causes.push({ field: 'metadata.labels', message: 'must be a map of strings' });
    else
      for (const [k, v] of Object.entries(m.labels)) {
        const ke = labelKeyError(k);
        if (ke) causes.push({ field: 'metadata.labels', message: `Invalid value: "${k}": ${ke}` });
        if (typeof v !== 'string') causes.push({ field: `metadata.labels`, message: `Invalid value: label "${k}" must be a string` });
        else {
          const ve = labelValueError(v);
          if (ve) causes.push({ field: 'metadata.labels', message: `Invalid value: "${v}": ${ve}` });
        }
      }
  }
  if (m.annotations !== undefined) {
    if (!isObject(m.annotations)) causes.push({ field: 'metadata.annotations', message: 'must be a map of strings' });
    else {
      let size = 0;
      for (const [k, v] of Object.entries(m.annotations)) {
        const ke = labelKeyError(k);
        if (ke) causes.push({ field: 'metadata.annotations', message: `Invalid value: "${k}": ${ke}` });
        if (typeof v !== 'string') causes.push({ field: 'metadata.annotations', message: `Invalid value: annotation "${k}" must be a string` });
        else size += k.length + v.length;
      }
      if (size > 256 * 1024) causes.push({ reason: 'FieldValueTooLong', field: 'metadata.annotations', message: 'Too long: must have at most 262144 bytes' });
    }
  }
  if (m.finalizers !== undefined && (!Array.isArray(m.finalizers) || m.finalizers.some((f) => typeof f !== 'string'))) {
    causes.push({ field: 'metadata.finalizers', message: 'must be a list of strings' });
  }
  return causes;
}

function validPort(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

const protocols = ['TCP', 'UDP', 'SCTP'];

export function podSpecErrors(spec: unknown, prefix = 'spec'): StatusCause[] {
  const causes: StatusCause[] = [];
  if (!isObject(spec)) return [{ reason: 'FieldValueRequired', field: prefix, message: 'Required value' }];
  const containers = getArray(spec, 'containers');
  if (!containers || containers.length === 0) {
    causes.push({ reason: 'FieldValueRequired', field: `${prefix}.containers`, message: 'Required value' });
    return causes;
  }
  const names = new Set<string>();
  containers.forEach((c, i) => {
    const f = `${prefix}.containers[${i}]`;
    const name = getString(c, 'name');
    if (!name) causes.push({ reason: 'FieldValueRequired', field: `${f}.name`, message: 'Required value' });
    else {
      for (const e of nameErrors('dns1123-label', name)) causes.push({ field: `${f}.name`, message: `Invalid value: "${name}": ${e}` });
      if (names.has(name)) causes.push({ reason: 'FieldValueDuplicate', field: `${f}.name`, message: `Duplicate value: "${name}"` });
      names.add(name);
    }
    if (!getString(c, 'image')) causes.push({ reason: 'FieldValueRequired', field: `${f}.image`, message: 'Required value' });
    (getArray(c, 'ports') ?? []).forEach((p, j) => {
      if (!validPort(isObject(p) ? p.containerPort : undefined)) {
        causes.push({ field: `${f}.ports[${j}].containerPort`, message: 'Invalid value: must be between 1 and 65535, inclusive' });
      }
    });
  });
  return causes;
}

export interface ServicePortRange {
  min: number;
  max: number;
}

export function serviceSpecErrors(spec: unknown, nodePorts: ServicePortRange): StatusCause[] {
  const causes: StatusCause[] = [];
  if (!isObject(spec)) return [{ reason: 'FieldValueRequired', field: 'spec', message: 'Required value' }];
  const type = getString(spec, 'type') ?? 'ClusterIP';
  if (!['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'].includes(type)) {
    causes.push({ reason: 'FieldValueNotSupported', field: 'spec.type', message: `Unsupported value: "${type}"` });
  }
  if (type === 'ExternalName' && !getString(spec, 'externalName')) {
    causes.push({ reason: 'FieldValueRequired', field: 'spec.externalName', message: 'Required value' });
  }
  const ports = getArray(spec, 'ports') ?? [];
  if (ports.length === 0 && type !== 'ExternalName' && getString(spec, 'clusterIP') !== 'None') {
    causes.push({ reason: 'FieldValueRequired', field: 'spec.ports', message: 'Required value' });
  }
  const seenNames = new Set<string>();
  const seenPorts = new Set<string>();
  ports.forEach((p, i) => {
    const f = `spec.ports[${i}]`;
    if (!isObject(p)) {
      causes.push({ field: f, message: 'must be an object' });
      return;
    }
    const name = getString(p, 'name') ?? '';
    if (ports.length > 1 && !name) causes.push({ reason: 'FieldValueRequired', field: `${f}.name`, message: 'Required value' });
    if (name) {
      for (const e of nameErrors('dns1123-label', name)) causes.push({ field: `${f}.name`, message: `Invalid value: "${name}": ${e}` });
      if (seenNames.has(name)) causes.push({ reason: 'FieldValueDuplicate', field: `${f}.name`, message: `Duplicate value: "${name}"` });
      seenNames.add(name);
    }
    if (!validPort(p.port)) causes.push({ field: `${f}.port`, message: `Invalid value: ${JSON.stringify(p.port ?? null)}: must be between 1 and 65535, inclusive` });
    const protocol = getString(p, 'protocol') ?? 'TCP';
    if (!protocols.includes(protocol)) causes.push({ reason: 'FieldValueNotSupported', field: `${f}.protocol`, message: `Unsupported value: "${protocol}": supported values: "SCTP", "TCP", "UDP"` });
    const pp = `${String(p.port)}/${protocol}`;
    if (seenPorts.has(pp)) causes.push({ reason: 'FieldValueDuplicate', field: `${f}`, message: `Duplicate value: port ${pp}` });
    seenPorts.add(pp);
    const tp = p.targetPort;
    if (tp !== undefined) {
      if (typeof tp === 'number' ? !validPort(tp) : typeof tp !== 'string' || nameErrors('dns1123-label', tp).length > 0 || tp.length > 15) {
        causes.push({ field: `${f}.targetPort`, message: `Invalid value: ${JSON.stringify(tp)}: must be a port number between 1 and 65535 or a port name` });
      }
    }
    const np = p.nodePort;
    if (np !== undefined && np !== 0) {
      if (typeof np !== 'number' || np < nodePorts.min || np > nodePorts.max) {
        causes.push({ field: `${f}.nodePort`, message: `Invalid value: ${JSON.stringify(np)}: provided port is not in the valid range. The range of valid ports is ${nodePorts.min}-${nodePorts.max}` });
      } else if (type === 'ClusterIP') {
        causes.push({ reason: 'FieldValueForbidden', field: `${f}.nodePort`, message: 'Forbidden: may not be used when `type` is \'ClusterIP\'' });
      }
    }
  });
  const selector = getMap(spec, 'selector');
  if (selector) {
    for (const [k, v] of Object.entries(selector)) {
      const ke = labelKeyError(k);
      if (ke) causes.push({ field: 'spec.selector', message: `Invalid value: "${k}": ${ke}` });
      if (typeof v !== 'string' || labelValueError(v)) causes.push({ field: 'spec.selector', message: `Invalid value: ${JSON.stringify(v)}` });
    }
  }
  return causes;
}
