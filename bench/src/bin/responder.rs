//! `llmselect-bench-responder ADDR`: the peer comparison's tiny origin (see
//! `llmselect_bench::responder`), one thread like one nginx worker.

fn main() -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: llmselect-bench-responder ADDR"))?
        .parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        llmselect_bench::responder::serve(listener).await?;
        Ok(())
    })
}
