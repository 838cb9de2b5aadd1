/**
 * Which server runs the scheduled jobs. A server alone runs them itself (LOCAL_LEADERSHIP); the
 * servers of a cluster elect one of them on etcd (etcd-scheduler-leadership.ts), so that each
 * job's slot runs once per cluster and a job skipped for maintenance is recorded once.
 */
export interface SchedulerLeadership {
  /** Whether this server runs the scheduled jobs now. */
  leads(): boolean;
  /**
   * Claim slot `slot` (epoch seconds) of job `job` (`<type>/<id>`) for this server once it has
   * decided it (run, skip or failure): not `claimed` when a server of the cluster has claimed that
   * slot or a later one already (it ran, or was skipped, there), so that a leader taking over
   * does not run a slot again. `last`: the latest slot claimed, to go on from.
   */
  claimSlot(job: string, slot: number): Promise<SlotClaim>;
  /** The node name of the server that leads, when known (undefined: none, or no cluster). */
  leader(): Promise<string | undefined>;
  /** Stop taking part (a leader steps down at once: another server takes over). */
  close(): Promise<void>;
}

export interface SlotClaim {
  claimed: boolean;
  last: number;
}

/** A server without a cluster: it always leads, and every slot is its own. */
export const LOCAL_LEADERSHIP: SchedulerLeadership = {
  leads: () => true,
  claimSlot: (_job, slot) => Promise.resolve({ claimed: true, last: slot }),
  leader: () => Promise.resolve(undefined),
  close: () => Promise.resolve(),
};
