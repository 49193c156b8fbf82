#!/usr/bin/env python3
# Runs a command on a pseudo-terminal (its stdin, stdout and stderr a tty, as when a user
# types it) and types the answers given, each once the output since the last answer ends
# with a question (": "). Input: one JSON argument {"argv": [...], "answers": ["...\r"],
# "timeout": seconds}. Output: one JSON line {"output": everything the terminal showed,
# "exit": exit code, or minus the signal number, "answered": answers typed}.
import json, os, pty, select, sys, time

spec = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(spec['argv'][0], spec['argv'])
out = b''
answered = 0
answers = list(spec.get('answers', []))
deadline = time.time() + spec.get('timeout', 60)
mark = 0
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    if answers and out[mark:].rstrip(b' ').endswith(b':'):
        answered += 1
        time.sleep(0.05)
        os.write(fd, answers.pop(0).encode())
        mark = len(out)
else:
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
print(json.dumps({'output': out.decode('utf8', 'replace'), 'exit': os.waitstatus_to_exitcode(status), 'answered': answered}))
