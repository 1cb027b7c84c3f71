# The transfer tests' server: on ADDR 7100 it sends FILE and closes; on 7101 it hashes what it
# receives and answers with the sha256.  Usage: transfer_server.py ADDR FILE
import hashlib, socket, sys, threading
addr, path = sys.argv[1], sys.argv[2]
def down(c):
    with c, open(path, "rb") as f:
        c.sendfile(f)
def up(c):
    with c:
        h = hashlib.sha256()
        while True:
            b = c.recv(1 << 20)
            if not b: break
            h.update(b)
        c.sendall(h.hexdigest().encode())
def serve(port, fn):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=fn, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(7101, up), daemon=True).start()
serve(7100, down)
