/** PBS retention options, in the order prune applies them (shared by prune, jobs, API and CLI). */
export const KEEP_OPTION_NAMES = [
  'keep-last',
  'keep-hourly',
  'keep-daily',
  'keep-weekly',
  'keep-monthly',
  'keep-yearly',
] as const;
export type KeepOptionName = (typeof KEEP_OPTION_NAMES)[number];
export type KeepOptions = Partial<Record<KeepOptionName, number>>;
