// How numbers, sizes and times read on every page.

export function bytes(n: number | null | undefined): string {
  if (n == null || !isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function mib(n: number): string {
  return n >= 1024 ? `${+(n / 1024).toFixed(1)} GiB` : `${n} MiB`;
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? ` ${s % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? ` ${m % 60}m` : ''}`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** ago is "3m ago" for a past time, "in 3m" for a future one. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const d = (new Date(iso).getTime() - now) / 1000;
  if (Math.abs(d) < 5) return 'just now';
  return d < 0 ? `${duration(-d)} ago` : `in ${duration(d)}`;
}

export function dateTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** shortId keeps a wire ID's prefix and first hex digits. */
export function shortId(id: string): string {
  return id.length > 16 ? id.slice(0, 16) + '…' : id;
}
