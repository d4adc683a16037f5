/** Limits of gossip broadcast, named with units last. */

/** Peers each new value is pushed to by every node that first sees it. */
export const fanout = 3;

/** How often a node sends its digest to one random peer (anti-entropy). */
export const antiEntropyIntervalMs = 100;

/** Values carried by one push message; anti-entropy sends the rest in later rounds. */
export const pushItemsMax = 512;

/** Out-of-order sequence numbers listed per origin in a digest. */
export const digestExtrasMax = 256;

/** Broadcasts waiting for their fsync; beyond it a broadcast is refused with queue-full. */
export const pendingBroadcastsMax = 10_000;

/** Largest encoded value accepted by broadcast. */
export const valueSizeBytesMax = 64 * 1024;

/** The log file of every value this node holds. */
export const logFileName = 'gossip.log';
