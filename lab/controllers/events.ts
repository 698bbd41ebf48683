/**
 * Event recording as client-go's recorder does it for controllers: a core/v1
 * Event named `<object>.<hex nanoseconds>` in the object's namespace. Failures
 * are logged, never thrown: events are best effort.
 */
import type { Logger } from '../../lib/log.js';
import type { ApiClient } from './client.js';
import { now } from './types.js';
import type { KubeObject } from './types.js';

export interface EventRecorder {
  record(obj: KubeObject, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export function eventRecorder(client: ApiClient, component: string, logger: Logger): EventRecorder {
  return {
    record(obj, type, reason, message) {
      const namespace = obj.metadata.namespace || 'default';
      const name = obj.metadata.name ?? '';
      const ts = now();
      const nanos = BigInt(Date.now()) * 1_000_000n + process.hrtime.bigint() % 1_000_000n;
      const event = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${name}.${nanos.toString(16)}`, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          namespace: obj.metadata.namespace,
          name,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        reason,
        message,
        type,
        source: { component },
        reportingComponent: component,
        reportingInstance: component,
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: 1,
      };
      client.create(`/api/v1/namespaces/${namespace}/events`, event).catch((err: unknown) => {
        logger.warn('could not record event', { reason, object: `${namespace}/${name}`, err });
      });
    },
  };
}
