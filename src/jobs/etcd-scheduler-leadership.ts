/**
 * Scheduled jobs once per cluster (issue 17): the servers of a cluster elect the one that runs
 * the scheduler, with etcd's election recipe (the etcd3 client's Election, under the cluster's
 * prefix at `P election/scheduler/`). Each candidate puts a key under its own lease; the oldest
 * key leads. A leader that dies or is cut off from etcd loses its lease after the TTL, its key
 * goes, and the next candidate takes over; a leader that stops (`close`) resigns at once.
 *
 * An election alone can hand over mid-slot, or let a leader that is cut off believe it still
 * leads for up to a TTL. So before running a slot the leader also claims it in etcd
 * (`P jobs/<type>/<id>/last-slot`, compared with what it read): a slot that one server claimed
 * is never run again by another, and a server that cannot reach etcd claims nothing.
 */
import type { Campaign, Etcd3 } from 'etcd3';
import { etcdCall } from '../maintenance/etcd-call.js';
import type { SchedulerLeadership, SlotClaim } from './scheduler-leadership.js';

export interface EtcdSchedulerLeadershipOptions {
  client: Etcd3;
  /** The cluster's key prefix (ends with `/`). */
  prefix: string;
  /** This server's node name: what `leader()` answers while it leads. */
  node: string;
  /** Seconds a dead leader keeps leading (its lease's TTL; the cluster's lease TTL). */
  ttlSeconds: number;
  /** Pause before campaigning again after a campaign failed (default 1 s). */
  retryMs?: number;
  log?: { warn(obj: object, msg: string): void };
}

const b = (s: string) => Buffer.from(s);

export class EtcdSchedulerLeadership implements SchedulerLeadership {
  private campaign: Campaign | undefined;
  private leading = false;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly opts: EtcdSchedulerLeadershipOptions) {
    if (!opts.prefix.endsWith('/')) this.opts = { ...opts, prefix: `${opts.prefix}/` };
    this.campaignNow();
  }

  private election() {
    return this.opts.client.namespace(this.opts.prefix).election('scheduler', this.opts.ttlSeconds);
  }

  private campaignNow(): void {
    if (this.closed) return;
    const campaign = this.election().campaign(this.opts.node);
    this.campaign = campaign;
    campaign.on('elected', () => {
      if (this.campaign === campaign) this.leading = true;
    });
    campaign.on('error', (err) => {
      if (this.campaign !== campaign) return;
      // lease lost or etcd out of reach: not the leader any more (another may be by now)
      this.leading = false;
      this.campaign = undefined;
      campaign.resign().catch(() => undefined);
      this.opts.log?.warn({ err }, 'scheduler: the leader election failed, campaigning again');
      this.retry = setTimeout(() => this.campaignNow(), this.opts.retryMs ?? 1000);
      this.retry.unref();
    });
  }

  leads(): boolean {
    return this.leading;
  }

  async leader(): Promise<string | undefined> {
    return this.call(() => this.election().leader());
  }

  private call<T>(request: () => Promise<T>): Promise<T> {
    return etcdCall('the job scheduler', request);
  }

  async claimSlot(job: string, slot: number): Promise<SlotClaim> {
    const key = b(`${this.opts.prefix}jobs/${job}/last-slot`);
    const value = b(`${slot} ${this.opts.node}`);
    for (;;) {
      const [kv] = (await this.call(() => this.opts.client.kv.range({ key }))).kvs;
      const last = kv ? Number(kv.value.toString().split(' ')[0]) : undefined;
      if (last !== undefined && last >= slot) return { claimed: false, last };
      const res = await this.call(() =>
        this.opts.client.kv.txn({
          compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: kv?.mod_revision ?? '0' }],
          success: [{ request_put: { key, value } }],
          failure: [],
        }),
      );
      if (res.succeeded) return { claimed: true, last: slot };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.leading = false;
    if (this.retry) clearTimeout(this.retry);
    const campaign = this.campaign;
    this.campaign = undefined;
    await campaign?.resign().catch(() => undefined);
  }
}

/**
 * The servers campaigning to run the scheduler, oldest first (the first leads): each one's node
 * name and lease id. For the cluster's status.
 */
export async function schedulerCandidates(
  client: Etcd3,
  prefix: string,
): Promise<{ node: string; lease: string }[]> {
  const base = `${prefix.endsWith('/') ? prefix : `${prefix}/`}election/scheduler/`;
  const end = Buffer.from(base);
  end[end.length - 1]!++;
  const res = await etcdCall('the cluster status', () =>
    client.kv.range({ key: b(base), range_end: end, sort_order: 'Ascend', sort_target: 'Create' }),
  );
  return res.kvs.map((kv) => ({ node: kv.value.toString(), lease: kv.lease }));
}
