/**
 * Labels and annotations the agent puts on sandboxes and containers, as the
 * upstream kubelet does, so that a restarted agent finds (and adopts) what runs.
 */
export const podNameLabel = 'io.kubernetes.pod.name';
export const podNamespaceLabel = 'io.kubernetes.pod.namespace';
export const podUidLabel = 'io.kubernetes.pod.uid';
export const containerNameLabel = 'io.kubernetes.container.name';

export const containerHashAnnotation = 'io.kubernetes.container.hash';
export const restartCountAnnotation = 'io.kubernetes.container.restartCount';
export const terminationMessagePathAnnotation = 'io.kubernetes.container.terminationMessagePath';
export const terminationMessagePolicyAnnotation = 'io.kubernetes.container.terminationMessagePolicy';
export const gracePeriodAnnotation = 'io.kubernetes.pod.terminationGracePeriod';
export const preStopAnnotation = 'io.kubernetes.container.preStopHandler';
export const portsAnnotation = 'io.kubernetes.container.ports';
/** Marks init containers (upstream tells them apart by the pod spec). */
export const containerTypeAnnotation = 'io.kubernetes.container.type';
