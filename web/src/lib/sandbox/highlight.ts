// Syntax highlighting for file previews, loaded only when a file is shown.
const byExt: Record<string, string> = {
  js: 'javascript', mjs: 'javascript', cjs: 'javascript', jsx: 'javascript', ts: 'typescript', tsx: 'typescript',
  py: 'python', go: 'go', rs: 'rust', rb: 'ruby', java: 'java', kt: 'kotlin', c: 'c', h: 'c', cc: 'cpp', cpp: 'cpp',
  hpp: 'cpp', cs: 'csharp', php: 'php', swift: 'swift', sh: 'bash', bash: 'bash', zsh: 'bash', json: 'json',
  yaml: 'yaml', yml: 'yaml', toml: 'ini', ini: 'ini', cfg: 'ini', conf: 'ini', xml: 'xml', html: 'xml', svg: 'xml',
  css: 'css', scss: 'scss', less: 'less', md: 'markdown', sql: 'sql', lua: 'lua', pl: 'perl', r: 'r',
  dockerfile: 'dockerfile', makefile: 'makefile', mk: 'makefile', diff: 'diff', patch: 'diff'
};

export function languageOf(name: string): string {
  const lower = name.toLowerCase();
  if (lower === 'dockerfile' || lower === 'makefile') return lower;
  const ext = lower.includes('.') ? lower.split('.').pop()! : '';
  return byExt[ext] ?? '';
}

/** highlight returns escaped HTML with hljs token spans. */
export async function highlight(code: string, name: string): Promise<string> {
  const { default: hljs } = await import('highlight.js/lib/common');
  const lang = languageOf(name);
  if (lang && hljs.getLanguage(lang)) return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
  return hljs.highlight(code, { language: 'plaintext' }).value;
}
