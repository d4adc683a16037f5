/**
 * Every limit of the core and transport layers, named, with its unit last. Exceeding one is
 * backpressure or a clear error, never silent growth.
 */

/** Largest payload of one node-to-node frame. Larger frames close the connection. */
export const frameSizeBytesMax = 4 * 1024 * 1024;

/** Frame header: payload length (u32 LE) then CRC32C of the payload (u32 LE). */
export const frameHeaderBytes = 8;

/** Messages queued for one peer while its connection is down or slow. Overflow is dropped and counted. */
export const peerQueueMessagesMax = 16 * 1024;

/** Bytes queued for one peer. Overflow is dropped and counted. */
export const peerQueueBytesMax = 64 * 1024 * 1024;

/** Reconnect backoff: first delay, cap, and jitter (as a fraction of the delay). */
export const reconnectDelayMsMin = 50;
export const reconnectDelayMsMax = 5_000;
export const reconnectJitterRatio = 0.5;

/** How long a new inbound connection may take to identify itself. */
export const handshakeTimeoutMs = 5_000;

/** RPCs in flight per RPC endpoint; beyond it a call fails at once with queue-full. */
export const rpcInflightMax = 64 * 1024;

/** Default deadline of an RPC when the caller gives none. */
export const rpcDeadlineMsDefault = 5_000;

/**
 * Share of the time that background work done in steps (encoding and writing a periodic
 * snapshot) may take while the process also serves requests: after a step of d ms it pauses
 * d × (1 − share) / share ms. Run back to back, the steps of a 240 MB snapshot took every
 * member's event loop for 7 s at once, the three members competed for two cores, and
 * requests queued behind them (etcdctl check perf --load=m's slowest 0.6–0.7 s).
 */
export const backgroundWorkShare = 0.25;

/** The pause after a background step of `stepMs`, for backgroundWorkShare (0 after none). */
export function pauseAfterStepMs(stepMs: number): number {
  if (!(stepMs > 0)) return 0;
  return Math.ceil((stepMs * (1 - backgroundWorkShare)) / backgroundWorkShare);
}
