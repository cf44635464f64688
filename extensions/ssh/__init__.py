"""SSH into your own server: a gateway service (keys, sign-in, lockout, audit) and an SSH
endpoint inside every user server that only the gateway can use, reached over a WebSocket
on the server's own URL."""
