/**
 * Controller expectations as client-go's: after a controller creates or
 * deletes objects it waits for its cache to show them before deciding again,
 * so a lagging cache never makes it create (or delete) twice. Expectations
 * expire after `ttlMs` in case the cache missed an event.
 */
export class Expectations {
  private readonly pending = new Map<string, { adds: number; dels: Set<string>; at: number }>();

  constructor(private readonly ttlMs = 30_000) {}

  /** Expect `adds` creations and the deletion of the objects keyed `dels`. */
  expect(owner: string, adds: number, dels: string[] = []): void {
    const cur = this.pending.get(owner);
    this.pending.set(owner, { adds: (cur?.adds ?? 0) + adds, dels: new Set([...(cur?.dels ?? []), ...dels]), at: Date.now() });
  }

  /** A creation was seen in the cache, or failed and will not be. */
  observeAdd(owner: string): void {
    const e = this.pending.get(owner);
    if (e && e.adds > 0) e.adds--;
  }

  /** A deletion was seen (object gone or marked for deletion), or failed. */
  observeDelete(owner: string, key: string): void {
    this.pending.get(owner)?.dels.delete(key);
  }

  satisfied(owner: string): boolean {
    const e = this.pending.get(owner);
    if (!e) return true;
    if ((e.adds <= 0 && e.dels.size === 0) || Date.now() - e.at > this.ttlMs) {
      this.pending.delete(owner);
      return true;
    }
    return false;
  }

  forget(owner: string): void {
    this.pending.delete(owner);
  }
}
