import pkcs11js from "pkcs11js";
import { KeyStoreClosedError } from "../../keystore/errors.js";
import type { PinSource } from "./config.js";

// Session states (PKCS#11 2.40 section 5.6); pkcs11js exports no CKS_* constants.
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

export interface PooledSession {
  readonly handle: Buffer;
  readonly generation: number;
  /** The keeper session: never handed out by `acquire`, never dropped for a failed call. */
  readonly keeper?: boolean;
}

/**
 * A bounded pool of read-write sessions on one slot. The user logs in once (login state is per application and
 * token in PKCS#11, shared by all its sessions): a new session logs in when the token is not logged in. When a
 * session turns out closed or logged out, `reset()` drops every session of that generation, so the next acquire
 * opens fresh sessions and logs in again.
 *
 * Besides the worker sessions, one *keeper* session stays open for the pool's lifetime: it holds the login (closing
 * an application's last session logs it out) and owns the session objects (transport and drill session keys), which
 * PKCS#11 destroys with the session that created them. Workers can then be closed after any failed call.
 */
export class SessionPool {
  private readonly idle: PooledSession[] = [];
  private readonly waiters: { resolve: (s: PooledSession) => void; reject: (e: unknown) => void }[] = [];
  private open = 0;
  private generation = 0;
  private keeper: PooledSession | undefined;
  private closed = false;

  constructor(
    private readonly pkcs11: pkcs11js.PKCS11,
    private readonly slot: Buffer,
    private readonly size: number,
    private readonly pin: PinSource,
  ) {}

  get sessionsOpen(): number {
    return this.open;
  }

  /**
   * The current generation. Session objects made on the keeper session of generation g exist while this is still g:
   * `reset()` closes that keeper (and so destroys them) and moves on to g + 1.
   */
  get currentGeneration(): number {
    return this.generation;
  }

  async acquire(): Promise<PooledSession> {
    if (this.closed) throw new KeyStoreClosedError("the key store is closed");
    const s = this.idle.pop();
    if (s) return s;
    if (this.open < this.size) return this.openNew();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** The keeper session (opened on first use; counted apart from the pool size). */
  async keeperSession(): Promise<PooledSession> {
    if (this.closed) throw new KeyStoreClosedError("the key store is closed");
    if (this.keeper && this.keeper.generation === this.generation) return this.keeper;
    const handle = this.pkcs11.C_OpenSession(
      this.slot,
      pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION,
    );
    try {
      if (!this.isUserSession(handle)) await this.login(handle);
    } catch (err) {
      try {
        this.pkcs11.C_CloseSession(handle);
      } catch {
        // ignore
      }
      throw err;
    }
    this.keeper = { handle, generation: this.generation, keeper: true };
    return this.keeper;
  }

  /** Returns a healthy session to the pool. Sessions of an older generation are closed instead. */
  release(s: PooledSession): void {
    if (s.keeper) return;
    if (this.closed || s.generation !== this.generation) {
      this.discard(s);
      return;
    }
    const w = this.waiters.shift();
    if (w) w.resolve(s);
    else this.idle.push(s);
  }

  /**
   * Closes one session whose state is unknown after a failed call (an operation may still be active in it), so that
   * no later caller inherits it. The pool opens a fresh one when needed.
   */
  drop(s: PooledSession): void {
    if (s.keeper) return;
    this.discard(s);
  }

  /** The session (and so probably every session) was closed or logged out underneath us. */
  reset(s: PooledSession): void {
    if (s.generation === this.generation) {
      this.generation += 1;
      for (const old of this.idle.splice(0)) this.discard(old);
      this.closeKeeper();
    }
    if (!s.keeper) this.discard(s);
  }

  private closeKeeper(): void {
    const k = this.keeper;
    this.keeper = undefined;
    if (!k) return;
    try {
      this.pkcs11.C_CloseSession(k.handle);
    } catch {
      // already closed
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(new KeyStoreClosedError("the key store is closed"));
    for (const s of this.idle.splice(0)) this.discard(s);
    this.closeKeeper();
  }

  private discard(s: PooledSession): void {
    this.open -= 1;
    try {
      this.pkcs11.C_CloseSession(s.handle);
    } catch {
      // already closed
    }
    // A waiter may be waiting for capacity that this frees.
    const w = this.waiters.shift();
    if (w) this.openNew().then(w.resolve, w.reject);
  }

  private async openNew(): Promise<PooledSession> {
    this.open += 1;
    let handle: Buffer | undefined;
    try {
      handle = this.pkcs11.C_OpenSession(this.slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
      // Login state belongs to the token, not to us: it may have been lost underneath (C_CloseAllSessions, HSM
      // failover), so ask the session rather than trusting a flag.
      if (!this.isUserSession(handle)) await this.login(handle);
      return { handle, generation: this.generation };
    } catch (err) {
      this.open -= 1;
      if (handle) {
        try {
          this.pkcs11.C_CloseSession(handle);
        } catch {
          // ignore
        }
      }
      throw err;
    }
  }

  /** True when the session sees the user's (private) objects, i.e. the user is logged in. */
  isUserSession(handle: Buffer): boolean {
    const state = this.pkcs11.C_GetSessionInfo(handle).state;
    return state === CKS_RW_USER_FUNCTIONS || state === CKS_RO_USER_FUNCTIONS;
  }

  private async login(handle: Buffer): Promise<void> {
    const pin = await this.pin();
    try {
      this.pkcs11.C_Login(handle, pkcs11js.CKU_USER, pin);
    } catch (err) {
      if ((err as { code?: number }).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw err;
    }
  }
}
