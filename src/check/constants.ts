/**
 * Every limit of the checker layer, named, with its unit last. Exceeding one is a clear
 * BadInputError or an `unknown` verdict, never silent growth.
 */

/** Longest input line a history parser accepts. A longer line is bad input. */
export const historyLineCharsMax = 1024 * 1024;

/** Events (invocations and completions) one history may hold. */
export const historyEventsMax = 2_000_000;

/** Distinct processes one history may name. */
export const historyProcessesMax = 100_000;

/** Search steps between two reads of the injected clock: cheap enough, fine enough. */
export const clockCheckEverySteps = 512;

/**
 * Memoised configurations (linearized set, model state) one partition may hold before the
 * search gives up with `unknown`: the cache is the search's memory, and it must be bounded.
 */
export const searchCacheEntriesMax = 20_000_000;

/** Default time budget of one check when the caller names none. */
export const checkTimeoutMsDefault = 30_000;

/** Operations listed by name in one failure explanation; the rest are counted. */
export const explainOperationsMax = 12;

/** Operations drawn as bars in one HTML report; beyond it the report says how many were left out. */
export const reportOperationsMax = 20_000;

/** Buckets of the throughput-over-time plot. */
export const reportThroughputBuckets = 60;

/** Steps one partition's search runs before the next partition takes its turn. */
export const searchSliceSteps = 16_384;
