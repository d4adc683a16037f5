/** Limits and defaults of the simulator, named with units last. */

/** Largest cluster the simulator models (node indexes fit one trace byte). */
export const simNodesMax = 64;

/** Default network latency: a floor plus an exponential tail. */
export const latencyMsMinDefault = 1;
export const latencyMsTailMeanDefault = 2;

/** Messages held on one clogged link before further ones are dropped. */
export const clogQueueMessagesMax = 10_000;

/** Default length of the safety phase (faults on) and the bound of the liveness phase. */
export const safetyPhaseMsDefault = 60_000;
export const livenessPhaseMsMax = 30_000;

/** Disk operation latencies in simulation (floor plus exponential tail). */
export const diskWriteMsMin = 0.02;
export const diskSyncMsMin = 0.2;
export const diskSyncMsTailMeanDefault = 0.5;
