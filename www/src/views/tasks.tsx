/** Running and finished tasks, and one task's log, followed live while the task runs. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { ErrorBox, Loading } from '../components.js';
import { dateTime, duration } from '../format.js';
import { useApi } from '../hooks.js';
import type { Task, TaskLogLine } from '../types.js';

const NODE = '/nodes/localhost';

function statusClass(status: string | undefined): string {
  if (status === undefined) return 'task-running';
  if (status === 'OK') return 'task-ok';
  if (status.startsWith('WARNINGS')) return 'task-warn';
  if (/^skipped/i.test(status)) return 'task-skipped';
  return 'task-error';
}

function TaskTable({ tasks, running }: { tasks: Task[]; running: boolean }) {
  return (
    <div class="overflow-auto">
      <table class="striped tasks">
        <thead>
          <tr>
            <th scope="col">Started</th>
            {!running && <th scope="col">Ended</th>}
            <th scope="col">Type</th>
            <th scope="col">ID</th>
            <th scope="col">User</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map((t) => (
            <tr key={t.upid}>
              <td>
                <a href={`#/tasks/${encodeURIComponent(t.upid)}`}>{dateTime(t.starttime)}</a>
              </td>
              {!running && <td>{dateTime(t.endtime)}</td>}
              <td>{t.worker_type}</td>
              <td>{t.worker_id ?? ''}</td>
              <td>{t.user}</td>
              <td>
                <span class={statusClass(t.status)}>{t.status ?? 'running'}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Tasks() {
  const running = useApi(
    async (signal) => (await api.get<Task[]>(`${NODE}/tasks`, { running: true, limit: 100 }, signal)).data,
    [],
    2000,
  );
  const recent = useApi(
    async (signal) =>
      (await api.get<Task[]>(`${NODE}/tasks`, { limit: 50 }, signal)).data.filter(
        (t) => t.endtime !== undefined,
      ),
    [],
    5000,
  );
  return (
    <section aria-labelledby="tasks-heading">
      <h1 id="tasks-heading">Tasks</h1>
      <h2>Running</h2>
      <ErrorBox error={running.error} title="Could not load the running tasks" />
      {!running.data && !running.error && <Loading what="tasks" />}
      {running.data?.length === 0 && <p class="muted">No task is running.</p>}
      {running.data && running.data.length > 0 && <TaskTable tasks={running.data} running />}
      <h2>Finished</h2>
      <ErrorBox error={recent.error} title="Could not load the finished tasks" />
      {recent.data?.length === 0 && <p class="muted">No finished tasks yet.</p>}
      {recent.data && recent.data.length > 0 && <TaskTable tasks={recent.data} running={false} />}
    </section>
  );
}

interface TaskStatus {
  upid: string;
  type: string;
  id?: string;
  user: string;
  starttime: number;
  status: 'running' | 'stopped';
  exitstatus?: string;
}

/** The task's log, fetched incrementally every 1.5 s while the task runs. */
export function TaskLog({ upid }: { upid: string }) {
  const [lines, setLines] = useState<TaskLogLine[]>([]);
  const [active, setActive] = useState(true);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [stopError, setStopError] = useState<Error | undefined>(undefined);
  const [now, setNow] = useState(Date.now());
  const pre = useRef<HTMLPreElement>(null);
  const status = useApi(
    async (signal) =>
      (await api.get<TaskStatus>(`${NODE}/tasks/${encodeURIComponent(upid)}/status`, undefined, signal)).data,
    [upid, active],
  );

  useEffect(() => {
    const ctl = new AbortController();
    let start = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setLines([]);
    const poll = async () => {
      try {
        const res = await api.get<TaskLogLine[]>(
          `${NODE}/tasks/${encodeURIComponent(upid)}/log`,
          { start, limit: 500, 'test-status': true },
          ctl.signal,
        );
        if (ctl.signal.aborted) return;
        if (res.data.length > 0) {
          start += res.data.length;
          setLines((old) => [...old, ...res.data]);
        }
        const stillActive = res.active === true;
        setActive(stillActive);
        setNow(Date.now());
        if (stillActive || res.data.length === 500) timer = setTimeout(poll, stillActive ? 1500 : 0);
      } catch (err) {
        if (!ctl.signal.aborted) setError(err as Error);
      }
    };
    void poll();
    return () => {
      ctl.abort();
      if (timer) clearTimeout(timer);
    };
  }, [upid]);

  useEffect(() => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines.length]);

  const stop = async () => {
    try {
      await api.delete(`${NODE}/tasks/${encodeURIComponent(upid)}`);
    } catch (err) {
      setStopError(err as Error);
    }
  };
  const s = status.data;
  return (
    <section aria-labelledby="task-heading">
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="#/tasks">Tasks</a>
          </li>
          <li>{s ? `${s.type}${s.id ? ` ${s.id}` : ''}` : 'Task'}</li>
        </ul>
      </nav>
      <h1 id="task-heading">Task log</h1>
      <ErrorBox error={status.error} title="Could not load the task" />
      {s && (
        <dl class="kv task-meta">
          <dt>Type</dt>
          <dd>
            {s.type} {s.id ?? ''}
          </dd>
          <dt>User</dt>
          <dd>{s.user}</dd>
          <dt>Started</dt>
          <dd>{dateTime(s.starttime)}</dd>
          <dt>Status</dt>
          <dd data-testid="task-status">
            {active ? (
              <>
                <span class="spinner" aria-hidden="true" /> running for {duration(now / 1000 - s.starttime)}{' '}
                <button type="button" class="outline small-button danger" onClick={stop}>
                  Stop
                </button>
              </>
            ) : (
              <span class={statusClass(s.exitstatus)}>{s.exitstatus ?? 'stopped'}</span>
            )}
          </dd>
        </dl>
      )}
      <ErrorBox error={stopError} title="Could not stop the task" />
      <ErrorBox error={error} title="Could not load the log" />
      <pre class="task-log" ref={pre} tabIndex={0} aria-label="Task log" data-testid="task-log">
        {lines.map((l) => l.t).join('\n')}
      </pre>
      <p class="muted small">
        <code>{upid}</code>
      </p>
    </section>
  );
}
