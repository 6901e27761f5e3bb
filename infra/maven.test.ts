import { describe, expect, it } from 'vitest';
import { mavenFailureReason } from './maven.ts';

describe('mavenFailureReason', () => {
  it('picks the line naming the artifact that could not be fetched', () => {
    const out = [
      '[INFO] Scanning for projects...',
      '[ERROR] Failed to execute goal on project x: Could not resolve dependencies for project a:b:jar:1',
      '[ERROR] Could not find artifact io.apicurio:apicurio-registry-storage-kafkasql:jar:2.4.2.Final in central (https://repo.maven.apache.org/maven2) -> [Help 1]',
    ].join('\n');
    expect(mavenFailureReason(out)).toBe(
      'Could not find artifact io.apicurio:apicurio-registry-storage-kafkasql:jar:2.4.2.Final in central (https://repo.maven.apache.org/maven2)',
    );
  });

  it('names an unreachable repository', () => {
    expect(
      mavenFailureReason('[ERROR] ... Unknown host repo.maven.apache.org: Name or service not known'),
    ).toBe('Unknown host repo.maven.apache.org: Name or service not known');
  });

  it('falls back to the first [ERROR] line, then to saying there was none', () => {
    expect(
      mavenFailureReason('[INFO] x\n[ERROR] \n[ERROR] The goal you specified requires a project -> [Help 1]'),
    ).toBe('The goal you specified requires a project');
    expect(mavenFailureReason('killed')).toBe('no error line in its output');
  });
});
