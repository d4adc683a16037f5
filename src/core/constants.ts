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
