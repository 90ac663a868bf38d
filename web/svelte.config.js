import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

// The build lands in internal/webui/dist/app, which the control plane
// embeds (go:embed) and serves at /. Every route is client-rendered: the
// fallback page boots the app for any path the API does not own.
/** @type {import('@sveltejs/kit').Config} */
export default {
  preprocess: vitePreprocess(),
  kit: {
    adapter: adapter({
      pages: '../internal/webui/dist/app',
      assets: '../internal/webui/dist/app',
      fallback: 'index.html',
      precompress: true,
      strict: true
    }),
    paths: { relative: false },
    appDir: '_app',
    output: { preloadStrategy: 'modulepreload' }
  }
};
