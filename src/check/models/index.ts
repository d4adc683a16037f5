/** Every model by name, for the CLI and for callers that pick a model at run time. */
import type { Model } from '../model.js';
import { kvModel } from './kv.js';
import { mutexModel } from './mutex.js';
import { queueModel } from './queue.js';
import { registerModel } from './register.js';
import { setModel } from './set.js';

export const modelNames = ['register', 'kv', 'set', 'queue', 'mutex'] as const;
export type ModelName = (typeof modelNames)[number];

/** The search treats states opaquely, so each model is held with its state type erased. */
export type AnyModel = Model<unknown>;

// Method parameters are bivariant, so a Model<S> is accepted as a Model<unknown> as it is.
const erase = <S>(model: Model<S>): AnyModel => model;

export const models: Readonly<Record<ModelName, AnyModel>> = {
  register: erase(registerModel),
  kv: erase(kvModel),
  set: erase(setModel),
  queue: erase(queueModel),
  mutex: erase(mutexModel),
};

export function isModelName(name: string): name is ModelName {
  return (modelNames as readonly string[]).includes(name);
}

export { kvModel, mutexModel, queueModel, registerModel, setModel };
