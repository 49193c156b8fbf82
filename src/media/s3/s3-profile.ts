// AWS_PROFILE naming a profile the shared files do not define: the SDK's chain then ends
// in "Could not load credentials from any providers" (keys in the environment are not
// used when AWS_PROFILE is set), which says nothing of the profile. Looked up here, in
// the files the SDK reads (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, else ~/.aws/),
// only to name the problem once credentials were not found.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The profile AWS_PROFILE names when neither shared file defines it, else null. */
export function missingProfile(env: NodeJS.ProcessEnv = process.env): string | null {
  const name = env.AWS_PROFILE;
  if (!name) return null;
  const home = env.HOME ?? os.homedir();
  const credentials = env.AWS_SHARED_CREDENTIALS_FILE ?? path.join(home, '.aws', 'credentials');
  const config = env.AWS_CONFIG_FILE ?? path.join(home, '.aws', 'config');
  const sections = [...sectionsOf(credentials), ...sectionsOf(config).map((s) => s.replace(/^profile\s+/, ''))];
  return sections.includes(name) ? null : name;
}

function sectionsOf(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/^\s*\[\s*([^\]]+?)\s*\]/gm)].map((m) => m[1]);
}
