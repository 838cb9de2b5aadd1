/**
 * Job states of a cluster (issue 17, docs/cluster.md): one key per job under
 * `P jobs/<type>/<id>/state`, next to the slot the scheduler's leader claimed
 * (etcd-scheduler-leadership.ts). Every server reads the same last run, so after the leader
 * changes the job lists still show the runs the old leader made, and the new leader goes on from
 * them. The value is the JSON of a job-state file.
 */
import type { Etcd3 } from 'etcd3';
import { etcdCall } from '../maintenance/etcd-call.js';
import { parseJobState, type JobState, type JobStateStore, type JobType } from './job-state.js';

export class EtcdJobStateStore implements JobStateStore {
  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
  ) {}

  private key(type: JobType, id: string): string {
    return `${this.prefix}jobs/${type}/${id}/state`;
  }

  async read(type: JobType, id: string): Promise<JobState | undefined> {
    const key = this.key(type, id);
    const text = await etcdCall(`the state of job '${id}'`, () => this.client.get(key).string());
    return text === null ? undefined : parseJobState(text, `${key} in etcd`);
  }

  async write(type: JobType, id: string, state: JobState): Promise<void> {
    await etcdCall(`the state of job '${id}'`, () =>
      this.client.put(this.key(type, id)).value(JSON.stringify(state)).exec(),
    );
  }

  async remove(type: JobType, id: string): Promise<void> {
    await etcdCall(`the state of job '${id}'`, () => this.client.delete().key(this.key(type, id)).exec());
  }
}
