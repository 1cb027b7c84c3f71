"""The lab's counting server: port 8080 on srv's IPv4 and IPv6 addresses, answering each
connection with b"got N\\n" (N: the bytes it read) and closing it.

  count_server.py               one read, then the answer: the server closes first (its side keeps
                                the TIME-WAIT, so the client may use its port again at once)
  count_server.py --until-eof   reads until the client's FIN (a client that half-closes)
"""
import socket
import sys
import threading

UNTIL_EOF = "--until-eof" in sys.argv[1:]


def serve(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 8080))
    s.listen(64)
    while True:
        c, _ = s.accept()
        got = 0
        while True:
            b = c.recv(65536)
            got += len(b)
            if not b or not UNTIL_EOF:
                break
        c.sendall(b"got %d\n" % got)
        c.close()


for family, addr in ((socket.AF_INET, "10.10.3.2"), (socket.AF_INET6, "fd00:10:3::2")):
    threading.Thread(target=serve, args=(family, addr), daemon=True).start()
threading.Event().wait()
