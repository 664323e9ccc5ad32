// An HTTP answer that ends a request, in the Matrix error shape ({ errcode, error }): thrown by handlers, written
// by whichever listener caught it (the appservice endpoint, the console and the provisioning API).
export class HttpError extends Error {
  readonly status: number
  readonly errcode: string
  constructor(status: number, errcode: string, message: string) {
    super(message)
    this.status = status
    this.errcode = errcode
  }
}
