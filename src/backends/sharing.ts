// The volume-sharing policy both backends apply, written once: how a container's mounts of one
// volume combine, and which other users a sandbox's claim clashes with. What differs per backend
// (loop devices for images, one VM per sandbox) stays in the backend; the rule lives here.
import type { SandboxUse } from '../volumes/registry';

/** One volume per entry: read-write if any of its mounts in the container is (first-seen order). */
export function readOnlyByVolume(mounts: Iterable<{ volumePath: string; readOnly: boolean }>): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const m of mounts) out.set(m.volumePath, (out.get(m.volumePath) ?? true) && m.readOnly);
  return out;
}

/**
 * The mode a sandbox records for a volume: read-only only if this container asks read-only and the
 * sandbox does not already hold it read-write (another of its containers may be writing).
 */
export function sandboxReadOnly(requested: boolean, mine: SandboxUse | undefined): boolean {
  return requested && (mine?.readOnly ?? true);
}

/** Other users that rule out a claim: a writer excludes every other user, a reader excludes writers. */
export function clashingUsers<T extends { readOnly: boolean }>(readOnly: boolean, others: readonly T[]): T[] {
  return others.filter((u) => !readOnly || !u.readOnly);
}

/**
 * A volume belongs to a sandbox (a pod), not to one container: every container of the pod may mount it,
 * so a claim is judged against the other sandboxes' uses only.
 */
export function otherSandboxes<T extends { id: string }>(uses: readonly T[], sandboxId: string): T[] {
  return uses.filter((u) => u.id !== sandboxId);
}

/**
 * Whether a container may join its pod's device for a volume: readers always may; a writer only if the
 * device is writable (a host backend that attached it read-only for the pod cannot upgrade it in place).
 */
export function mayJoinPodDevice(readOnly: boolean, deviceReadOnly: boolean): boolean {
  return readOnly || !deviceReadOnly;
}
