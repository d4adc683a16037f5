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

/** How a job ran: its steps, the longest, their sum, and the time from start to end. */
export interface StepFigures {
  steps: number;
  longestStepMs: number;
  busyMs: number;
  elapsedMs: number;
}

/**
 * Runs `job` one step per turn of the event loop, waiting `pauseMs(stepMs)` after a step of
 * stepMs (0: the next turn), then `done` with the figures; without timers (a synchronous
 * environment), every step at once. Stops quietly once `stopped()` says so.
 */
export function runInSteps(
  job: { step(): boolean },
  env: {
    timers?: { set(ms: number, fn: () => void): unknown };
    clock?: { monotonicMs(): number };
  },
  pauseMs: (stepMs: number) => number,
  stopped: () => boolean,
  done: (figures: StepFigures) => void,
): void {
  const now = (): number => env.clock?.monotonicMs() ?? 0;
  const figures: StepFigures = { steps: 0, longestStepMs: 0, busyMs: 0, elapsedMs: 0 };
  const startedMs = now();
  const next = (): void => {
    if (stopped()) return;
    let finished = false;
    do {
      const stepStartedMs = now();
      finished = job.step();
      const stepMs = now() - stepStartedMs;
      figures.steps++;
      figures.longestStepMs = Math.max(figures.longestStepMs, stepMs);
      figures.busyMs += stepMs;
      if (!finished && env.timers !== undefined) {
        env.timers.set(pauseMs(stepMs), next);
        return;
      }
    } while (!finished);
    figures.elapsedMs = now() - startedMs;
    done(figures);
  };
  next();
}

/** `inner`, with `install` run in its last step (a layer around an inner machine's restore). */
export function thenInstall(inner: { step(): boolean }, install: () => void): { step(): boolean } {
  return {
    step: () => {
      if (!inner.step()) return false;
      install();
      return true;
    },
  };
}
