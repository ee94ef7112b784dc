# SHIP's prompts on the benchmark backbone, shared by its CamVid (linear
# head and UperNet) and CIFAR-10 1k configs; each config names its own
# `ship_offline` (descriptors and images of the hierarchy and prototypes).
ship_prompt = dict(
    type='SHIPPrompter',
    starts=None,  # searched at the start of training
    num_tokens=50,
    ssp_tokens=10,
    ap_groups=2,
    ap_tokens=10,
    lambda_a=0.1,
    tau=0.3,
    prototypes=None,  # computed at the start of training
    pml_tokens=10,
    lambda_m=0.5,
    decoupled=True,
    prompt_update='attend',
    lambda_d=0.3,  # chosen on val (0.1: 69.5, 0.3: 72.0, 0.5: 67.0)
    dropout=0.1)
