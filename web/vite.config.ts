import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

// `npm run dev` serves the app with hot reload and sends the API to a
// control plane (WRENN_API_URL, default http://127.0.0.1:8080).
const api = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.WRENN_API_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [sveltekit()],
  build: { target: 'es2022', chunkSizeWarningLimit: 600, rolldownOptions: { checks: { pluginTimings: false } } },
  server: {
    proxy: {
      '/v1': { target: api, ws: true, changeOrigin: false },
      '/docs': api,
      '/openapi.yaml': api
    }
  }
});
