/**
 * Branded primitive ids, so a NodeId cannot be passed where a Term is expected.
 * Brands cost nothing at run time.
 */

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type NodeId = Brand<string, 'NodeId'>;
export type Term = Brand<number, 'Term'>;
export type LogIndex = Brand<number, 'LogIndex'>;
export type Revision = Brand<number, 'Revision'>;
export type TimerId = Brand<number, 'TimerId'>;

const nodeIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function nodeId(value: string): NodeId {
  if (!nodeIdPattern.test(value)) {
    throw new TypeError(`invalid node id ${JSON.stringify(value)}: use 1-64 of [A-Za-z0-9_.-]`);
  }
  return value as NodeId;
}

export function isNodeId(value: unknown): value is NodeId {
  return typeof value === 'string' && nodeIdPattern.test(value);
}
