# The transfer tests' client (transfer_server.py at ADDR):
#   transfer_client.py ADDR down|up FILE  prints "sha256 seconds"
#   transfer_client.py ADDR options       prints the TCP options the connection agreed on
#                                         (tcp_info's tcpi_options: 1 timestamps, 2 SACK, 4 wscale)
import hashlib, socket, sys, time
addr, mode = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
if mode == "options":
    c = socket.create_connection((addr, 7100), timeout=20)
    print(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[5])
    sys.exit(0)
path = sys.argv[3]
if mode == "down":
    c = socket.create_connection((addr, 7100), timeout=20)
    h = hashlib.sha256()
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b)
    digest = h.hexdigest()
else:
    c = socket.create_connection((addr, 7101), timeout=20)
    with open(path, "rb") as f:
        c.sendfile(f)
    c.shutdown(socket.SHUT_WR)
    digest = b""
    while True:
        b = c.recv(100)
        if not b: break
        digest += b
    digest = digest.decode()
print(digest, "%.4f" % (time.monotonic() - t0))
