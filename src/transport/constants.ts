/**
 * Every limit of the RPC layer, named, with its unit last. The caller-side bound and the
 * default deadline live with the other transport limits in src/core/constants.ts.
 */
export { rpcDeadlineMsDefault, rpcInflightMax } from '../core/constants.js';

/** Requests being handled at once per endpoint; beyond it a request is answered queue-full. */
export const rpcServingMax = 64 * 1024;

/** Longest method name, in UTF-16 code units. Longer names on the wire are malformed. */
export const rpcMethodNameCharsMax = 128;

/** Longest error message carried in a reply; longer ones are cut. */
export const rpcErrorMessageCharsMax = 1024;

/** Longest deadline a caller may ask for; a deadline is a promise to give up, not a wish. */
export const rpcDeadlineMsMax = 10 * 60 * 1000;

/** Request ids remembered per peer to drop duplicated requests (the network may duplicate). */
export const rpcRequestIdsRemembered = 4096;
