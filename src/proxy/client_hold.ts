/**
 * Holding a session's client input: while held, nothing the client sends is framed or
 * forwarded; it is kept in order (copied: a read buffer is reused) and the client socket is
 * paused, and on release it is framed again as if it had just arrived. A row limit holds input
 * behind a counted result; a review will hold a statement until it is approved.
 */
import type { Socket } from 'node:net';
import type { MessageFramer } from '../wire/framer.js';

export class ClientHold {
  private held = false;
  private chunks: Buffer[] = [];
  /** The message that was being framed when the hold began before it (framed again first). */
  private deferred: Buffer | undefined;

  constructor(
    private readonly framer: MessageFramer,
    private readonly client: Socket,
    /** Frames a chunk again (the relay's client path, which may hold again). */
    private readonly feed: (chunk: Buffer) => void,
  ) {}

  get active(): boolean {
    return this.held;
  }

  /** True when nothing waits (the session may give its upstream back). */
  get empty(): boolean {
    return !this.held && this.chunks.length === 0;
  }

  /** Holds what follows the message being framed now (call from its handler). */
  after(): void {
    this.held = true;
    this.framer.pause();
  }

  /** Holds the message being framed now too: its handler drops it, and it comes again first. */
  before(message: Buffer): void {
    this.deferred = Buffer.from(message);
    this.after();
  }

  /** A chunk that arrived while held; `owned` when it is already a copy of its own. */
  keep(chunk: Buffer, owned: boolean): void {
    this.chunks.push(owned ? chunk : Buffer.from(chunk));
    if (!this.client.isPaused()) this.client.pause();
  }

  /** Ends the hold: what waited is framed again, in order, until done or held again. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    const rest = this.framer.resume();
    if (rest) this.chunks.unshift(rest);
    if (this.deferred) this.chunks.unshift(this.deferred);
    this.deferred = undefined;
    while (!this.held && this.chunks.length > 0) this.feed(this.chunks.shift()!);
    if (!this.held && this.client.isPaused()) this.client.resume();
  }
}
