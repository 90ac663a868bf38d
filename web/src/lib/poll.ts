// poll runs f now and every ms while the page is visible; it stops while
// the tab is hidden and runs again as soon as it is shown. The returned
// function stops it (use it as an $effect's cleanup).
export function poll(f: () => void | Promise<void>, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let running = false;
  const tick = async () => {
    timer = undefined;
    if (stopped || document.hidden || running) return;
    running = true;
    try {
      await f();
    } finally {
      running = false;
      if (!stopped && !document.hidden) timer = setTimeout(tick, ms);
    }
  };
  const onVisibility = () => {
    if (!document.hidden && timer === undefined && !running) tick();
    if (document.hidden && timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  };
  document.addEventListener('visibilitychange', onVisibility);
  tick();
  return () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisibility);
  };
}
