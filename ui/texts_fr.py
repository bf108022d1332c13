"""French screen and decline texts (pure data); the same ids and {fields} as English in ui.screens."""

from __future__ import annotations

__all__ = ["CARD_TEXTS_FR", "DECLINE_TEXTS_FR", "QUESTION_TEXTS_FR", "SCREENS_FR"]

SCREENS_FR: dict[str, tuple[str, ...]] = {
    "starting": ("Démarrage...",),
    "offline": ("Hors ligne", "Paiement par carte indisponible"),
    "idle": ("Bienvenue", "Insérez votre carte"),
    "idle_bank_only": ("Bienvenue", "Cartes bancaires seulement", "Insérez votre carte"),
    "reading": ("Lecture de la carte...",),
    "card_not_accepted": ("Carte non acceptée", "Retirez votre carte"),
    "card_error": ("Erreur carte", "Retirez votre carte"),
    "select_pump": ("Choisissez la pompe", "{pumps}"),
    "enter_pin": ("Tapez votre code", "{stars}", "Validez par ENTER"),
    "authorizing": ("Autorisation...", "Veuillez patienter"),
    "declined": ("Refusé", "{reason}", "Retirez votre carte"),
    "host_unavailable": ("Refusé", "Serveur indisponible", "Retirez votre carte"),
    "lift_nozzle": ("Pompe {pump}", "Décrochez le pistolet", "Max {litres} L"),
    "filling": ("Pompe {pump}", "{litres} L", "{amount}"),
    "completing": ("Pompe {pump}", "Finalisation..."),
    "thank_you": ("Merci", "{litres} L  {amount}", "Prenez votre ticket"),
    "no_fuel": ("Aucun carburant servi", "Rien n'a été débité"),
    "remove_card": ("Retirez votre carte",),
    "pump_error": ("Pompe indisponible", "Adressez-vous au personnel"),
    "pump_busy": ("Toutes les pompes occupées", "Veuillez patienter"),
    "choose_app": ("Choisissez l'application", "{apps}"),
    "swipe_card": ("Puce illisible", "Utilisez la piste magnétique"),
    "insert_chip": ("Carte à puce", "Utilisez la puce"),
    "approved_up_to": ("Autorisé jusqu'à", "{amount}", "Pompe {pump} : décrochez le pistolet"),
    "lift_nozzle_amount": ("Pompe {pump}", "Décrochez le pistolet", "Max {amount}"),
    "card_removed": ("Carte retirée", "Transaction annulée"),
    "processing": ("Traitement...", "Ne retirez pas la carte"),
    "enter_pin_last": ("Tapez votre code", "{stars}", "Dernier essai"),
    "question": ("{question}", "{answer}", "Validez par ENTER"),
    "card_read": ("Carte {card} lue", "Insérez la carte de paiement"),
}

DECLINE_TEXTS_FR: dict[str, str] = {
    "wrong_pin": "Code erroné", "pin_tries_exceeded": "Nombre d'essais dépassé",
    "card_blocked": "Carte bloquée",
    "limit_exhausted": "Plafond atteint", "product_not_allowed": "Produit non autorisé",
    "card_expired": "Carte expirée", "unknown_card": "Carte inconnue", "pump_unknown": "Pompe non disponible",
    "do_not_honour": "Refusé par la banque", "insufficient_funds": "Provision insuffisante",
    "card_declined": "Refusé par la carte",
    "not_accepted": "Carte non acceptée", "host_timeout": "Pas de réponse de la banque",
    "host_unavailable": "Banque indisponible", "chip_error": "Erreur carte", "card_removed": "Carte retirée",
    "card_error": "Erreur carte", "cancelled": "Annulé", "pump_busy": "Pompe occupée",
    "interrupted": "Transaction interrompue",
}

QUESTION_TEXTS_FR: dict[str, str] = {
    "odometer": "Kilométrage", "vehicle": "Numéro de véhicule", "driver_id": "Code conducteur",
}

CARD_TEXTS_FR: dict[str, str] = {"loyalty": "Carte fidélité", "voucher": "Bon"}
