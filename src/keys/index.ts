/**
 * The key manager's public surface, for the operations layer, the config
 * loader and the CLI. See manager.ts for the architecture.
 */
export { KeyManager, type KeyManagerOptions, type ConfigChanges, type KeyDescription } from './manager.js';
export type { SnapshotLease, UsableVersion, KeyEntry, VersionEntry } from './snapshot.js';
export type { KeyMaterial } from './material.js';
export { systemClock, ManualClock, type Clock, type Timer } from './clock.js';
export { parseDuration, formatDuration, DURATION_FORMS } from './duration.js';
export {
  permits, describePolicy, KeyConfigError, POLICY_FIELDS,
  type KeyPolicy, type PolicyInput, type PolicyIssue, type PolicySpec,
} from './policy.js';
export type { KeyDefinition, KeyOrigin } from './definition.js';
export {
  KEY_TYPES, KEY_OPS, OUTBOUND_OPS, INBOUND_OPS, isKeyType, isKeyOp, keyTypeInfo, typeAllows,
  type ManagedKeyType, type KeyOp, type OutboundOp, type InboundOp,
} from './model.js';
export type { RefusalReason } from './selection.js';
export { DEFAULT_BUDGET, type BudgetOptions } from './budget.js';
export { DEFAULT_RETRY, type RetryOptions } from './scheduler.js';
