/**
 * Work on a large state done in steps, one per turn of the event loop, so that encoding or
 * rebuilding hundreds of megabytes never holds a node for seconds (a snapshot taken, a
 * snapshot restored). Steps read or copy nothing the caller may change meanwhile.
 */
export interface StepJob<T> {
  /** Does the next part; true once every part is done. */
  step(): boolean;
  /** What the job made; only once `step` has answered true. */
  result(): T;
}
