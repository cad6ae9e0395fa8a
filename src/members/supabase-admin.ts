import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';

/** Deletes a Supabase Auth user when an account is erased. */
export type AuthUserDeleter = (userId: string) => Promise<void>;

export function createSupabaseUserDeleter(url: string, serviceRoleKey: string): AuthUserDeleter {
  const supabase = createClient(url, serviceRoleKey, {
    auth: { autoRefreshToken: false, persistSession: false, detectSessionInUrl: false },
    // Node 20 has no global WebSocket; supabase-js insists on a transport even though we only call the admin API.
    realtime: { transport: WebSocket as unknown as NonNullable<NonNullable<Parameters<typeof createClient>[2]>['realtime']>['transport'] },
  });
  return async (userId) => {
    const { error } = await supabase.auth.admin.deleteUser(userId);
    // Already gone (an earlier attempt, or deleted from the dashboard) is what we wanted.
    if (error !== null && error.status !== 404) {
      throw new Error(`Supabase Auth refused to delete the user (status ${String(error.status)}): ${error.message}`);
    }
  };
}
