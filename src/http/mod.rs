//! TEMPORARY STUB (replaced by the real HTTP layer).
pub mod transport;
/// stub
#[derive(Clone, Debug, Default)]
pub struct Config;
/// stub
pub struct RequestBody<'a>(std::marker::PhantomData<&'a ()>);
/// stub
pub struct ResponseBody;
impl From<&'static str> for ResponseBody { fn from(_: &'static str) -> Self { ResponseBody } }
/// stub
pub trait Handler: Send + Sync + 'static {
    /// stub
    fn handle(&self, req: ::http::Request<RequestBody<'_>>) -> ::http::Response<ResponseBody>;
}
impl<F> Handler for F where F: Fn(::http::Request<RequestBody<'_>>) -> ::http::Response<ResponseBody> + Send + Sync + 'static {
    fn handle(&self, req: ::http::Request<RequestBody<'_>>) -> ::http::Response<ResponseBody> { self(req) }
}
/// stub
pub fn serve_connection<T: transport::Transport, H: Handler + ?Sized>(_t: &mut T, _h: &H, _c: &Config) {}
