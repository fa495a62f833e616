"""Trial protocol files and their REDCap projects and models, installed with the package."""
