// Vite config. `npm run build` writes dist/ with relative asset paths, so the
// same build is served by the gateway's dashboard listener at / and under the
// main port at /dashboard/. `npm run dev` serves on 127.0.0.1:5173 and proxies
// /admin to the gateway (RELAY_URL, default http://127.0.0.1:8080), adding the
// admin key from RELAY_ADMIN_KEY when it is set (docs/dashboard.md).
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

const target = process.env.RELAY_URL ?? "http://127.0.0.1:8080";
const adminKey = process.env.RELAY_ADMIN_KEY ?? "";

export default defineConfig({
  base: "./",
  plugins: [react()],
  server: {
    host: "127.0.0.1",
    port: 5173,
    strictPort: true,
    proxy: {
      "/admin": {
        target,
        changeOrigin: true,
        headers: adminKey ? { Authorization: `Bearer ${adminKey}` } : {},
      },
    },
  },
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 400 },
  test: { environment: "jsdom", include: ["src/**/*.test.{ts,tsx}"] },
});
