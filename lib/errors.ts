/**
 * Typed errors with a stable `code`. Callers branch on `code` (or on `errno`
 * for kernel errors), never on message text.
 */
export class KnodeError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KnodeError';
    this.code = code;
    this.details = options.details;
  }
}

export function isKnodeError(err: unknown, code?: string): err is KnodeError {
  return err instanceof KnodeError && (code === undefined || err.code === code);
}

/** Node's system errors carry `code` ('ENOENT', 'EEXIST', ...); read it without `any`. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
