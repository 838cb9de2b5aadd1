/** Data loading hooks: one-shot and polling, with the ApiError kept for display. */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | Error | undefined;
  loading: boolean;
  /**
   * When the request that produced `data` was sent (`performance.now()`): lets a caller tell an
   * answer given before an action of its own from one given after it.
   */
  requestedAt: number | undefined;
  reload: () => void;
}

/**
 * Load with `fn`, and again every `intervalMs` if given (PBS's UI polls active operations every
 * 3 s, reference §4.2). A poll never overlaps the previous one; a failed poll keeps the last data.
 * `deps` restart it.
 */
export function useApi<T>(
  fn: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
  intervalMs?: number,
): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [requestedAt, setRequestedAt] = useState<number | undefined>(undefined);
  const [error, setError] = useState<ApiError | Error | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;

  useEffect(() => {
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      const sent = performance.now();
      try {
        const v = await fnRef.current(ctl.signal);
        if (ctl.signal.aborted) return;
        setData(v);
        setRequestedAt(sent);
        setError(undefined);
      } catch (err) {
        if (ctl.signal.aborted || (err as Error).name === 'AbortError') return;
        setError(err as Error);
      }
      setLoading(false);
      if (intervalMs && !ctl.signal.aborted) timer = setTimeout(run, intervalMs);
    };
    setLoading(true);
    void run();
    return () => {
      ctl.abort();
      if (timer) clearTimeout(timer);
    };
  }, [...deps, tick, intervalMs]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, requestedAt, reload };
}
