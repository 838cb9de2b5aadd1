// The web UI's build: `npm run build:www` writes www/dist, which the server serves at `/`.
// JSX goes through esbuild's automatic runtime for Preact, so no Babel-based preset is needed.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 600 },
  server: { proxy: { '/api2': { target: 'https://localhost:8007', secure: false } } },
});
