/** The kubelet server: HTTPS API (authn/authz, logs, exec, attach, port-forward, stats, metrics) and healthz. */
export { startKubeletServer, type KubeletServer, type KubeletServerOptions } from './server.js';
export { apiReviewer, cachingReviewer, type Reviewer, type RequestUser } from './auth.js';
export { loadServingCert } from './tls.js';
