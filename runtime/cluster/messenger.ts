/**
 * md-cluster's messages between nodes: the token / message / ack protocol of md-cluster.rst
 * section 3, over any lock manager.
 *
 * Design note
 * - Locks (all taken at NL on start and converted after, as md-cluster does): "token" (EX while a
 *   node sends: one message in the cluster at a time), "message" (its value block carries the
 *   message), "ack" (CR on every node while idle; a sender converting it to EX is granted only
 *   once every other node dropped its CR, i.e. processed the message; the blocking callback of
 *   that EX request is what wakes the receivers).
 * - Sending: [local send mutex] token EX -> [receive mutex] message EX -> write the block ->
 *   message CW (the block goes to the resource) -> ack EX (waits for every receiver) -> ack CR ->
 *   message NL -> token NL. `lockComm` hands out the channel for several steps (the kernel's
 *   metadata_update_start ... finish) and a sender re-checks, holding it, that its message is
 *   still needed.
 * - Receiving (on ack's blocking callback for EX): [receive mutex] message CR -> read the block ->
 *   process -> ack NL -> message PR (waits until the sender let go of message) -> ack CR ->
 *   message NL. The handler runs before the ack is released: the sender's ack EX completes only
 *   when every node has processed the message.
 * - Joining: token EX (no message is in flight while we take our ack CR), ack CR, token NL.
 * - Exactly once: bytes 48-55 of the block (unused by the kernel's 48-byte message) carry a
 *   sequence number the sender bumps for each message; a receiver woken twice for one message
 *   (a late blocking callback) acknowledges it without processing it again.
 * - A block that is not a message we act on (unknown type, malformed, our own slot) is refused:
 *   reported through onRefused and still acknowledged, so the sender does not hang (the kernel
 *   stops acknowledging there and leaves the sender waiting).
 */
import { assert } from '../assert.ts';
import type { Lock, Lockspace } from '../locks/lock-manager.ts';
import { LocalMutex } from '../locks/local-mutex.ts';
import { LockMode } from '../locks/modes.ts';
import { CLUSTER_MSG_BYTES, decodeClusterMsg, encodeClusterMsg, MSG_TYPE_HANDLED_MAX, msgTypeName, type ClusterMsg } from './cluster-msg.ts';

const { NL, CR, CW, PR, EX } = LockMode;
const SEQUENCE_OFFSET = CLUSTER_MSG_BYTES;

export interface MessengerHandlers {
  /** Processes one message from another node; its ack waits for this. Must not send. */
  onMessage(msg: ClusterMsg): Promise<void>;
  /** A block that was acknowledged without being acted on, and why. */
  onRefused?(reason: string): void;
  /** The receive path failed on a lock (our node left, a peer broke the protocol). */
  onError?(error: unknown): void;
}

/** The channel held for a while: send any number of messages, then release. */
export interface CommChannel {
  send(msg: ClusterMsg): Promise<void>;
  release(): Promise<void>;
}

export class Messenger {
  private readonly sendMutex = new LocalMutex();
  private readonly receiveMutex = new LocalMutex();
  private wakeups = 0;
  private receiving: Promise<void> | null = null;
  private lastSequence: number | null = null;
  private stopped = false;
  /** Messages processed and refused, for status and tests. */
  received = 0;
  refused = 0;
  sent = 0;

  private constructor(
    readonly space: Lockspace,
    private readonly handlers: MessengerHandlers,
    private readonly token: Lock,
    private readonly message: Lock,
    private readonly ack: Lock,
  ) {}

  static async start(space: Lockspace, handlers: MessengerHandlers): Promise<Messenger> {
    const message = await space.lock('message', NL);
    const token = await space.lock('token', NL);
    let messenger: Messenger | null = null;
    const ack = await space.lock('ack', NL, { onBlocking: (mode) => mode === EX && messenger?.wake() });
    messenger = new Messenger(space, handlers, token, message, ack);
    await token.convert(EX);
    await ack.convert(CR);
    await token.convert(NL);
    return messenger;
  }

  /** 0-based md slot of this node. */
  get slot(): number {
    return this.space.slot - 1;
  }

  /** Sends `msg` to every other node and resolves once all of them processed it. */
  async send(msg: ClusterMsg): Promise<void> {
    const channel = await this.lockComm();
    try {
      await channel.send(msg);
    } finally {
      await channel.release();
    }
  }

  /** Takes the channel (token EX); nothing is received while it is held. */
  async lockComm(): Promise<CommChannel> {
    const releaseSend = await this.sendMutex.acquire();
    try {
      await this.token.convert(EX);
    } catch (error) {
      releaseSend();
      throw error;
    }
    const releaseReceive = await this.receiveMutex.acquire();
    let held = true;
    return {
      send: (msg) => {
        assert(held, 'send on a held channel');
        return this.sendHolding(msg);
      },
      release: async () => {
        assert(held, 'a channel is released once');
        held = false;
        releaseReceive();
        try {
          await this.token.convert(NL);
        } finally {
          releaseSend();
        }
      },
    };
  }

  private async sendHolding(msg: ClusterMsg): Promise<void> {
    await this.message.convert(EX);
    const block = this.message.valueBlock;
    const sequence = (readSequence(block) + 1) % 2 ** 48;
    block.set(encodeClusterMsg({ ...msg, slot: this.slot }));
    writeSequence(block, sequence);
    await this.message.convert(CW);
    try {
      await this.ack.convert(EX);
      await this.ack.convert(CR);
    } finally {
      await this.message.convert(NL);
    }
    this.sent += 1;
  }

  /** Blocking callback on ack for EX: some node is sending; process it (again, if woken meanwhile). */
  private wake(): void {
    if (this.stopped) return;
    this.wakeups += 1;
    if (this.receiving === null) this.receiving = this.receiveLoop();
  }

  private async receiveLoop(): Promise<void> {
    while (this.wakeups > 0 && !this.stopped) {
      this.wakeups = 0;
      try {
        await this.receiveMutex.run(() => this.receiveOne());
      } catch (error) {
        // A lock refused (our node left, a peer broke the protocol): report it and go back to
        // idle (ack CR, message NL) as far as the locks let us; the next wakeup tries again.
        this.handlers.onError?.(error);
        await this.backToIdle().catch(() => {});
      }
    }
    // In the same turn as the last check: a wakeup from here on starts a new loop.
    this.receiving = null;
  }

  private async backToIdle(): Promise<void> {
    if (!this.space.live) return;
    if (this.message.mode !== NL) await this.message.convert(NL);
    if (this.ack.mode !== CR) await this.ack.convert(CR);
  }

  private async receiveOne(): Promise<void> {
    if (this.ack.mode !== CR) return; // not idle: this wakeup is stale
    await this.message.convert(CR);
    const block = this.message.valueBlock.slice();
    const sequence = readSequence(block);
    if (sequence !== this.lastSequence) {
      this.lastSequence = sequence;
      const msg = decodeClusterMsg(block);
      const why = typeof msg === 'string' ? msg
        : msg.slot === this.slot ? `${msgTypeName(msg.type)} from our own slot ${msg.slot}`
        : msg.type > MSG_TYPE_HANDLED_MAX ? `${msgTypeName(msg.type)} is not handled here`
        : null;
      if (why !== null || typeof msg === 'string') {
        this.refused += 1;
        this.handlers.onRefused?.(why ?? 'malformed');
      } else {
        try {
          await this.handlers.onMessage(msg);
          this.received += 1;
        } catch (error) {
          // Acknowledged all the same: a failed handler must not hold the sender (and the
          // whole cluster's messaging) forever; the failure is reported here.
          this.refused += 1;
          this.handlers.onError?.(error);
        }
      }
    }
    await this.ack.convert(NL);
    await this.message.convert(PR);
    await this.ack.convert(CR);
    await this.message.convert(NL);
  }

  /** Stops receiving and lets go of every lock (the node leaves after this). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (!this.space.live) return; // a dead node's locks are gone with it
    await this.receiving;
    for (const lock of [this.ack, this.message, this.token]) if (lock.held) await lock.unlock().catch(() => {});
  }
}

function readSequence(block: Uint8Array): number {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  return v.getUint32(SEQUENCE_OFFSET, true) + (v.getUint16(SEQUENCE_OFFSET + 4, true) * 2 ** 32);
}

function writeSequence(block: Uint8Array, sequence: number): void {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setUint32(SEQUENCE_OFFSET, sequence % 2 ** 32, true);
  v.setUint16(SEQUENCE_OFFSET + 4, Math.floor(sequence / 2 ** 32), true);
}

