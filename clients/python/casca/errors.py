"""The one exception of the casca package."""
import grpc


class CascaError(Exception):
    """A failed casca call: the gRPC status code and the server's message.

    code is a grpc.StatusCode (e.g. grpc.StatusCode.NOT_FOUND), code_name its name ("NOT_FOUND"),
    message the server's human message (what was wrong and how to fix it), method the RPC
    ("casca.v1.SloService/GetSlo") or the client-side operation that failed.
    """

    def __init__(self, code, message, method=""):
        self.code = code
        self.code_name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self.message = message
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{self.code_name}: {message}")

    @classmethod
    def from_rpc(cls, err, method=""):
        """Wraps a grpc.RpcError (a failed call) into a CascaError."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = err.details() if hasattr(err, "details") else str(err)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", method)
