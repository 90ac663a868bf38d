// Short notices at the corner of the screen.
export interface Toast {
  id: number;
  kind: 'success' | 'error' | 'info';
  text: string;
}

class Toasts {
  list = $state<Toast[]>([]);
  #next = 1;

  show(kind: Toast['kind'], text: string, ms = kind === 'error' ? 7000 : 3500) {
    const id = this.#next++;
    this.list.push({ id, kind, text });
    setTimeout(() => this.dismiss(id), ms);
  }
  success(text: string) {
    this.show('success', text);
  }
  error(e: unknown) {
    this.show('error', e instanceof Error ? e.message : String(e));
  }
  dismiss(id: number) {
    this.list = this.list.filter((t) => t.id !== id);
  }
}

export const toasts = new Toasts();
