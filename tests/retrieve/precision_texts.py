"""The short biomedical claims the precision and runtime tests encode (one list for all of them)."""

TEXTS = [
    "Aspirin lowers the risk of heart attack in adults over fifty.",
    "The immune response to influenza vaccines declines with age.",
    "Tumour growth slowed in mice given a ketogenic diet.",
    "Protein folding errors are linked to neurodegenerative disease.",
    "A randomised trial found no effect of vitamin D on fractures.",
    "Gene expression in the liver follows a circadian rhythm.",
    "Blood pressure rose in patients taking the new drug.",
    "Antibiotic resistance spreads between bacteria by plasmids.",
]
QUESTIONS = ["does aspirin prevent heart attacks", "vitamin D and bone fractures", "circadian genes in the liver"]
