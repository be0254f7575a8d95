use clap::Parser;
use llmselect_fake_llm::cli::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let fake = llmselect_fake_llm::spawn(Args::parse().into_config()).await?;
    println!(
        "fake LLM listening on {} (OpenAI/Mistral {}, Anthropic {}, Gemini {})",
        fake.addr(),
        fake.openai_base_url(),
        fake.anthropic_base_url(),
        fake.gemini_base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
