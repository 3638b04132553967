DROP TABLE patient_photos;
DROP TABLE guardians;
DROP TABLE patient_search_terms;
DROP TABLE patients;
DROP TABLE referral_origins;
